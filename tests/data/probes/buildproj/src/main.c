/* Calls every unit so the link has something to resolve. */
#include <stdio.h>

int unit01(int x);
int unit02(int x);
int unit03(int x);
int unit04(int x);
int unit05(int x);
int unit06(int x);
int unit07(int x);
int unit08(int x);
int unit09(int x);
int unit10(int x);
int unit11(int x);
int unit12(int x);
int unit13(int x);
int unit14(int x);
int unit15(int x);

int main(void)
{
	int sum = 0;

	sum += unit01(1);
	sum += unit02(2);
	sum += unit03(3);
	sum += unit04(4);
	sum += unit05(5);
	sum += unit06(6);
	sum += unit07(7);
	sum += unit08(8);
	sum += unit09(9);
	sum += unit10(10);
	sum += unit11(11);
	sum += unit12(12);
	sum += unit13(13);
	sum += unit14(14);
	sum += unit15(15);
	printf("%d\n", sum);
	return 0;
}
